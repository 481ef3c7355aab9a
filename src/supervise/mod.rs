//! supervise: (to be written)
