//! Cluster tests: Slate's kube code through the real `kube::Client` against the fake
//! API server (tests/src/fake_kube.rs), plus `#[ignore]`d runs against a real cluster.

mod fake;
mod http;
mod publish;
mod rbac;
mod real;
mod topology;
