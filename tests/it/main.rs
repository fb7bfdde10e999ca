//! Integration tests: the real proa binary against a TLS test API server on 127.0.0.1 that speaks the watch
//! protocol, with real HTTP sidecars and real wrapped programs. One binary, one module per topic.

mod support;

mod aarch64;
mod check;
mod cli;
mod direct_probe;
mod docs;
#[cfg(not(feature = "kill"))]
mod envtest;
mod faults;
#[cfg(not(feature = "kill"))]
mod inject;
mod install;
#[cfg(feature = "kill")]
mod kill;
mod lifecycle;
mod manifests;
#[cfg(not(feature = "kill"))]
mod manifests_dry_run;
mod mesh;
#[cfg(not(feature = "kill"))]
mod mesh_network;
mod no_api;
mod off_switch;
mod peers;
mod pid1;
mod promise;
mod real_pods;
mod recognised;
mod scratch;
mod serve_quit;
mod signals;
mod termination;
mod threads;
