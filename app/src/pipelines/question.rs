//! A stage waiting for a person: the question a LangGraph graph asked (an interrupt),
//! shown on the run's page, and the answer a lead or the submitter gives.

#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait QuestionsBackend: Send + Sync + 'static {}
