//! (stub) picker
