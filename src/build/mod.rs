//! `berth build`: a Containerfile and a context → an OCI image in the store.
//!
//! `containerfile` parses (pure), `words` splits and expands words as Docker
//! does (pure), `plan` splits stages, picks `--target`'s and computes cache
//! keys (pure), `ignore` matches `.containerignore` patterns (pure).

pub mod builder;
pub mod config;
pub mod containerfile;
pub mod from;
pub mod ignore;
pub mod plan;
pub mod run;
pub mod run_plan;
pub mod words;
