//! What a cell asks of the kernel, answered on the kernel's runtime: the
//! cell's [`Effects`] (`s.submit`, `s.status`, `s.metrics`, ...). Each
//! question becomes a task that awaits the `Kernel` handle and sends the
//! answer back to the Lua thread, where the cell's coroutine resumes.

use std::str::FromStr;

use spindle_kernel::{Kernel, Submission};
use spindle_scheduler::{Priority, Source};
use spindle_scripting::{
    CellSubmission, DataReply, Effects, EmbedCall, EmbedFailure, EmbedReply, GraphSpec,
    HostEmbedError, KernelQuery,
};

use crate::to_data;

/// A notebook's effects on its kernel.
pub(crate) struct NotebookEffects {
    pub kernel: Kernel,
    pub runtime: tokio::runtime::Handle,
}

impl Effects for NotebookEffects {
    fn embed(&self, call: EmbedCall, reply: EmbedReply) {
        reply(Err(EmbedFailure::new(HostEmbedError(format!(
            "cells embed through a pipeline: s.submit(\"PIPELINE\", text) (service `{}`)",
            call.service
        )))));
    }

    fn submit(&self, submission: CellSubmission, reply: DataReply) {
        let kernel = self.kernel.clone();
        self.runtime.spawn(async move {
            let priority = submission
                .priority
                .as_deref()
                .and_then(|text| Priority::from_str(text).ok())
                .unwrap_or(Priority::Medium);
            let answer = kernel
                .submit(Submission {
                    pipeline: submission.pipeline,
                    text: submission.text,
                    priority,
                    deadline: submission.timeout,
                    correlation_id: submission.correlation_id,
                    source: Source::Jupyter,
                })
                .await;
            reply(Ok(to_data::answer(&answer)));
        });
    }

    fn query(&self, query: KernelQuery, reply: DataReply) {
        let kernel = self.kernel.clone();
        self.runtime.spawn(async move {
            let data = match query {
                KernelQuery::Status => to_data::status(&kernel).await,
                KernelQuery::Services => to_data::services(&kernel, &kernel.services()),
                KernelQuery::Pipelines => to_data::pipelines(&kernel.pipelines()),
                KernelQuery::Metrics => to_data::metrics(&kernel.metrics().await),
                KernelQuery::ServiceGraph => to_data::service_graph(&kernel),
            };
            reply(Ok(data));
        });
    }

    fn apply_graph(&self, graph: GraphSpec, reply: DataReply) {
        let kernel = self.kernel.clone();
        self.runtime.spawn(async move {
            reply(
                kernel
                    .apply(graph)
                    .await
                    .map(|report| to_data::apply_report(&report))
                    .map_err(|error| error.to_string()),
            );
        });
    }
}
