//! The server-side integration suites in one test binary (linked once): HTTP black-box
//! tests, the cluster and deploy code against the fake API server, the Colab endpoint,
//! pipelines and their executors, the manifests, object storage, and the harness's own
//! helpers. The browser journeys are `tests/browser`.

mod api;
mod cluster;
mod colab;
mod deploys;
mod harness;
mod manifests;
mod pipelines;
mod storage;
mod webhooks;
