//! Bencode decoder: never panics, and whatever it accepts re-encodes canonically to the same value.
#![no_main]

use enjambre_core::bencode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = bencode::decode(data) else {
        // The prefix decoder must agree: no value, or one that leaves trailing bytes.
        if let Ok((_, used)) = bencode::decode_prefix(data) {
            assert!(
                used < data.len(),
                "decode failed but decode_prefix used every byte"
            );
        }
        return;
    };
    let encoded = bencode::encode(&value);
    let again = bencode::decode(&encoded).expect("canonical encoding must decode");
    assert_eq!(again, value, "decode(encode(v)) != v");
    assert_eq!(bencode::encode(&again), encoded, "encoding is not stable");
    assert!(
        encoded.len() <= data.len(),
        "canonical form longer than the input"
    );
    if let Some(dict) = value.as_dict() {
        // Every top-level key's span holds exactly the value the full decode saw.
        for (key, expected) in dict {
            let span = bencode::dict_value_span(data, key)
                .expect("valid dict")
                .expect("key present");
            let raw = data.get(span).expect("span inside the input");
            assert_eq!(&bencode::decode(raw).expect("span decodes"), expected);
        }
    }
});
