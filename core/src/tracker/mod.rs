//! (stub) tracker
