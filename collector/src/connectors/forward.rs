//! The `forward` connector: passes batches from one pipeline to others of the same signal.

use std::sync::Arc;

use hotspan_config::Signal;
use hotspan_proto::Batch;

use crate::component::{BoxError, BuildContext, ComponentType, ConnectorType, ConsumerComponent, Lifecycle};
use crate::consumer::{BoxFuture, ConsumeError, Consumer, SignalConsumers};

/// It has no settings; the empty struct still refuses unknown keys.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

impl hotspan_config::ComponentConfig for ForwardConfig {}

impl ComponentType for Forward {
    const TYPE_NAME: &'static str = "forward";
    type Config = ForwardConfig;
}

impl ConnectorType for Forward {
    const PAIRS: &'static [(Signal, Signal)] = &[
        (Signal::Traces, Signal::Traces),
        (Signal::Metrics, Signal::Metrics),
        (Signal::Logs, Signal::Logs),
        (Signal::Profiles, Signal::Profiles),
    ];

    fn build(
        _ctx: &BuildContext,
        _config: ForwardConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BoxError> {
        Ok(Arc::new(Forward { next }))
    }
}

pub struct Forward {
    next: SignalConsumers,
}

impl Consumer for Forward {
    fn admit(&self, bytes: usize) -> Result<(), ConsumeError> {
        self.next
            .signals()
            .filter_map(|s| self.next.get(s))
            .try_for_each(|c| c.admit(bytes))
    }

    fn consume(&self, batch: Batch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            match self.next.get(batch.signal()) {
                Some(next) => next.consume(batch).await,
                None => Err(ConsumeError::Permanent(format!(
                    "forward has no {} pipeline",
                    batch.signal()
                ))),
            }
        })
    }
}

impl Lifecycle for Forward {}
