//! (stub) metainfo
