//! (stub) checkpoint
