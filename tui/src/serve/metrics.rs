//! The server's Prometheus metrics (the `prometheus` crate) and their text exposition for
//! `GET /metrics`: requests by route and status code, request latency, batch sizes, forward
//! pass time, queue depth and the models loaded. Leaves out HTTP and who records what.

use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    batch_size: HistogramVec,
    forward: HistogramVec,
    queue_depth: IntGaugeVec,
    model: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, String> {
        let fail = |e: prometheus::Error| format!("cannot set up the metrics: {e}");
        let requests = IntCounterVec::new(
            Opts::new("mnist_requests_total", "HTTP requests answered, by port, route and status code"),
            &["port", "route", "code"],
        )
        .map_err(fail)?;
        let latency = HistogramVec::new(
            HistogramOpts::new("mnist_request_duration_seconds", "Time from request to response, by port and route")
                .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
            &["port", "route"],
        )
        .map_err(fail)?;
        let batch_size = HistogramVec::new(
            HistogramOpts::new("mnist_batch_size", "Images per forward pass, by model")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
            &["model"],
        )
        .map_err(fail)?;
        let forward = HistogramVec::new(
            HistogramOpts::new("mnist_forward_duration_seconds", "Time of one batched forward pass, by model")
                .buckets(vec![0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5]),
            &["model"],
        )
        .map_err(fail)?;
        let queue_depth =
            IntGaugeVec::new(Opts::new("mnist_queue_depth", "Requests waiting for a worker, by model"), &["model"])
                .map_err(fail)?;
        let model = IntGaugeVec::new(
            Opts::new("mnist_model_info", "1 for each model loaded: its name, origin, device and workers"),
            &["model", "origin", "device", "workers", "batch_size"],
        )
        .map_err(fail)?;
        let registry = Registry::new();
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(batch_size.clone()),
            Box::new(forward.clone()),
            Box::new(queue_depth.clone()),
            Box::new(model.clone()),
        ] {
            registry.register(collector).map_err(fail)?;
        }
        Ok(Metrics { registry, requests, latency, batch_size, forward, queue_depth, model })
    }

    pub fn observe_request(&self, port: &str, route: &str, code: u16, elapsed: Duration) {
        self.requests.with_label_values(&[port, route, &code.to_string()]).inc();
        self.latency.with_label_values(&[port, route]).observe(elapsed.as_secs_f64());
    }

    pub fn observe_batch(&self, model: &str, images: usize, elapsed: Duration) {
        self.batch_size.with_label_values(&[model]).observe(images as f64);
        self.forward.with_label_values(&[model]).observe(elapsed.as_secs_f64());
    }

    pub fn set_queue_depth(&self, model: &str, depth: usize) {
        self.queue_depth.with_label_values(&[model]).set(depth as i64);
    }

    pub fn model_loaded(&self, labels: &[&str; 5]) {
        self.model.with_label_values(labels).set(1);
        self.queue_depth.with_label_values(&labels[..1]).set(0);
    }

    pub fn model_unloaded(&self, labels: &[&str; 5]) {
        let _ = self.model.remove_label_values(labels);
        let _ = self.queue_depth.remove_label_values(&labels[..1]);
        let _ = self.batch_size.remove_label_values(&labels[..1]);
        let _ = self.forward.remove_label_values(&labels[..1]);
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> Result<String, String> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).map_err(|e| e.to_string())?;
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_with_its_labels() {
        let metrics = Metrics::new().unwrap();
        metrics.observe_request("inference", "/predictions/{model}", 200, Duration::from_micros(800));
        metrics.observe_request("inference", "/predictions/{model}", 200, Duration::from_millis(3));
        metrics.observe_batch("mnist", 5, Duration::from_micros(900));
        metrics.model_loaded(&["mnist", "shipped", "cpu", "2", "32"]);
        metrics.set_queue_depth("mnist", 3);
        let text = metrics.render().unwrap();
        for line in [
            r#"mnist_requests_total{code="200",port="inference",route="/predictions/{model}"} 2"#,
            r#"mnist_request_duration_seconds_bucket{port="inference",route="/predictions/{model}",le="0.001"} 1"#,
            r#"mnist_request_duration_seconds_count{port="inference",route="/predictions/{model}"} 2"#,
            r#"mnist_batch_size_bucket{model="mnist",le="4"} 0"#,
            r#"mnist_batch_size_bucket{model="mnist",le="8"} 1"#,
            r#"mnist_forward_duration_seconds_count{model="mnist"} 1"#,
            r#"mnist_queue_depth{model="mnist"} 3"#,
            r#"mnist_model_info{batch_size="32",device="cpu",model="mnist",origin="shipped",workers="2"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        metrics.model_unloaded(&["mnist", "shipped", "cpu", "2", "32"]);
        assert!(!metrics.render().unwrap().contains("mnist_model_info{"));
    }
}
