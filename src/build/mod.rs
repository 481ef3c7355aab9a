//! `berth build`: a Containerfile and a context → an OCI image in the store.
//!
//! `containerfile` parses (pure), `words` splits and expands words as Docker
//! does (pure), `plan` splits stages, picks `--target`'s and computes cache
//! keys (pure), `ignore` matches `.containerignore` patterns (pure),
//! `run_plan` makes a RUN step's OCI spec (pure), `run` runs it in berth's
//! runtime, `builder` carries the steps out.

pub mod builder;
pub mod config;
pub mod containerfile;
pub mod from;
pub mod ignore;
pub mod plan;
pub mod run;
pub mod run_plan;
pub mod words;
