//! Cluster tests: Slate's kube code through the real `kube::Client` against the fake
//! API server (tests/src/fake_kube.rs), and against the real control plane (realkube).

mod fake;
mod http;
mod publish;
mod rbac;
mod realkube;
mod topology;
