//! (stub) bencode
