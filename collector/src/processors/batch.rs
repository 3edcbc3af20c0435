//! The `batch` processor, registered: its logic and config are `hotspan_processors::batch`.

use hotspan_config::Signal;
use hotspan_processors::batch::{BatchConfig, BatchProcessor};
use hotspan_processors::Processor;

use crate::component::{BoxError, BuildContext, ComponentType, ProcessorType};

pub struct Batch;

impl ComponentType for Batch {
    const TYPE_NAME: &'static str = "batch";
    type Config = BatchConfig;
}

impl ProcessorType for Batch {
    // Profiles carry a per-request dictionary, so merging them is not a concatenation.
    const SIGNALS: &'static [Signal] = &[Signal::Traces, Signal::Metrics, Signal::Logs];

    fn build(_: &BuildContext, config: BatchConfig) -> Result<Box<dyn Processor>, BoxError> {
        Ok(Box::new(BatchProcessor::new(config)))
    }
}
