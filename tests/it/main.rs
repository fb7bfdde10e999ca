//! Integration tests: the real proa binary against a TLS test API server on 127.0.0.1 that speaks the watch
//! protocol, with real HTTP sidecars and real wrapped programs. One binary, one module per topic.

mod support;

mod cli;
#[cfg(feature = "kill")]
mod kill;
mod lifecycle;
mod pid1;
mod signals;
