//! (stub) node
