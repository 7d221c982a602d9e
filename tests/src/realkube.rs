//! The real Kubernetes control plane from ../shared/realkube as a test peer.
