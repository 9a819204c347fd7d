//! (stub) layout
