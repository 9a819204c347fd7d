//! BEP 9/10/11 payloads and magnet URIs: `ut_metadata` messages, `ut_pex` messages, the extension handshake
//! and `Magnet::parse`. Checks: never panics; whatever is accepted re-encodes to something that parses to the
//! same value; a metadata data piece has exactly the length its index implies.
#![no_main]

use enjambre_core::extension::metadata::{piece_len, MetadataMsg};
use enjambre_core::extension::pex::PexMessage;
use enjambre_core::extension::ExtHandshake;
use enjambre_core::magnet::Magnet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = MetadataMsg::parse(data) {
        if let MetadataMsg::Data {
            piece,
            total_size,
            data,
        } = &msg
        {
            assert_eq!(piece_len(*total_size as usize, *piece as usize), Some(data.len()));
        }
        assert_eq!(MetadataMsg::parse(&msg.encode()).as_ref(), Ok(&msg));
    }
    if let Ok(pex) = PexMessage::parse(data) {
        let again = PexMessage::parse(&pex.encode()).expect("re-encoded PEX parses");
        assert_eq!(again.added.len(), pex.added.len());
        assert_eq!(again.dropped.len(), pex.dropped.len());
    }
    if let Ok(hs) = ExtHandshake::parse(data) {
        assert_eq!(ExtHandshake::parse(&hs.encode()).as_ref(), Ok(&hs));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = Magnet::parse(text) {
            assert_eq!(Magnet::parse(&m.to_uri()).as_ref(), Ok(&m));
        }
    }
});
