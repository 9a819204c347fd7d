//! (stub) wire
