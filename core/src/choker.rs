//! (stub) choker
