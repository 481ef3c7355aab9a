//! spec: (to be written)
