//! The API calls the Kubernetes executor makes (and nothing else: the Role in `k8s/`
//! grants exactly these): create, read and delete a Job, read and follow a pod's log.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use serde_json::Value;
use tokio::sync::mpsc;

use super::job::CONTAINER;

/// The API calls the executor makes (and nothing else): the Role in `k8s/` grants them.
#[derive(Clone)]
pub struct Jobs {
    pub client: kube::Client,
    pub namespace: String,
}

impl Jobs {
    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates the Job; one that already exists (a retried request) is not an error.
    pub async fn create(&self, spec: &Value) -> Result<(), String> {
        let job: Job = serde_json::from_value(spec.clone()).map_err(|e| e.to_string())?;
        match self.jobs().create(&PostParams::default(), &job).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The Job now, from the API server (not the watcher): `None` when it is gone.
    pub async fn get(&self, name: &str) -> Result<Option<Job>, String> {
        self.jobs().get_opt(name).await.map_err(|e| e.to_string())
    }

    /// Deletes the Job and, in the background, its pods.
    pub async fn delete(&self, name: &str) -> Result<(), String> {
        match self.jobs().delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The container's whole log.
    pub async fn log(&self, pod: &str) -> Result<String, String> {
        let params = LogParams {
            container: Some(CONTAINER.into()),
            ..Default::default()
        };
        self.pods()
            .logs(pod, &params)
            .await
            .map_err(|e| e.to_string())
    }

    /// Follows the container's log from its start, sending the lines after the first
    /// `skip` (those already had); returns when the stream ends.
    pub async fn follow_log(
        &self,
        pod: &str,
        skip: &AtomicUsize,
        lines: &mpsc::Sender<String>,
    ) -> Result<(), String> {
        let params = LogParams {
            container: Some(CONTAINER.into()),
            follow: true,
            ..Default::default()
        };
        let stream = self
            .pods()
            .log_stream(pod, &params)
            .await
            .map_err(|e| e.to_string())?;
        let mut read = stream.lines();
        let mut n = 0usize;
        while let Some(line) = read.next().await {
            let line = line.map_err(|e| e.to_string())?;
            n += 1;
            if n > skip.load(Ordering::SeqCst) {
                skip.store(n, Ordering::SeqCst);
                if lines.send(line).await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    }
}
