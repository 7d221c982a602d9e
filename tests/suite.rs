//! The server-side integration suites in one test binary (linked once): HTTP black-box
//! tests, the cluster and deploy code against the fake API server, the Colab endpoint,
//! pipelines and their executors, the manifests, and object storage. The browser
//! journeys are `tests/browser`.

mod api;
mod cluster;
mod colab;
mod deploys;
mod manifests;
mod pipelines;
mod storage;
