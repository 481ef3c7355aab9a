//! store: (to be written)
