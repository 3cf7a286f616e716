//! Command-line arguments. `--help` is generated from these doc comments, so they are the
//! user-facing reference; README.md repeats the essentials.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit codes:
  0    success
  2    bad arguments or data (retrying will not help)
  3    transient failure, e.g. the network (retrying may help)
  4    training diverged (the loss became NaN or infinite)
  70   internal error (a bug: please report it)
  130  interrupted by SIGINT     143  terminated by SIGTERM";

#[derive(Parser, Debug)]
#[command(name = "mnist", version, about = "Train the Keras MNIST CNN fast, headless or interactive, and predict with it", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The app's settings when `mnist` is run with no command: TuiArgs' defaults.
    pub fn tui_defaults() -> TuiArgs {
        match Cli::parse_from(["mnist", "tui"]).command {
            Some(Command::Tui(args)) => args,
            _ => unreachable!("`mnist tui` parses as the tui command"),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the Keras mnist_cnn model (the sample's job): download MNIST, train, report test
    /// accuracy, write the model.
    #[command(after_help = EXIT_CODES)]
    Train(TrainArgs),
    /// Predict digits with an MXNet checkpoint (ours, keras-mxnet's or Gluon's) or an ONNX file
    /// of the same architecture: classify image files, or measure accuracy on a Keras-style .npz.
    #[command(after_help = PREDICT_HELP)]
    Predict(PredictArgs),
    /// Time training steps and print samples/s and the time of one epoch.
    Bench(BenchArgs),
    /// Serve a model over HTTP: the sample's MXNet Model Server API (/predictions/{model},
    /// /ping, management on 8081), KServe v2 (/v2/...) and Prometheus metrics (8082).
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Write a model (an MXNet checkpoint or an .onnx file) as a standard ONNX file for ONNX
    /// Runtime, Triton or KServe.
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
    /// The interactive terminal app: train and watch the curves, draw a digit and see the
    /// prediction, browse the test set (what `mnist` alone opens on a terminal).
    Tui(TuiArgs),
}

/// A choice's name as its command-line flag takes it ("auto", "bf16", ...).
pub fn choice_name(choice: impl ValueEnum) -> String {
    choice.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The CPU backend.
    Cpu,
    /// The CUDA backend (fails if no usable GPU).
    Cuda,
    /// CUDA when a usable GPU exists, else the CPU (the log says which).
    Auto,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionChoice {
    /// float32 GEMMs (the CPU's only precision).
    F32,
    /// bfloat16 GEMM inputs on tensor cores, f32 sums (CUDA only).
    Bf16,
    /// float16 GEMM inputs on tensor cores, f32 sums, dynamic loss scaling (CUDA only).
    F16,
}

impl PrecisionChoice {
    pub fn precision(self) -> mnist_cuda::Precision {
        match self {
            PrecisionChoice::F32 => mnist_cuda::Precision::F32,
            PrecisionChoice::Bf16 => mnist_cuda::Precision::Bf16,
            PrecisionChoice::F16 => mnist_cuda::Precision::F16,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportDtype {
    /// float32, as Keras exported.
    F32,
    /// float16: half the size; MXNet loads it as is, ONNX casts it to float32 in the graph.
    F16,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelFormat {
    /// PREFIX-symbol.json and PREFIX-0000.params, as the sample wrote.
    Mxnet,
    /// PREFIX.onnx (NHWC input, as `mnist export` writes by default).
    Onnx,
    /// Both.
    Both,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputLayoutChoice {
    /// (N, H, W, C), e.g. (N, 28, 28, 1): as Keras and the sample's MXNet model take images.
    Nhwc,
    /// (N, C, H, W), e.g. (N, 1, 28, 28): as PyTorch models take them.
    Nchw,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable: a live progress bar on a terminal, one line per epoch otherwise.
    Text,
    /// One JSON object per line and event.
    Json,
}

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct DataArgs {
    /// A local MNIST: a Keras-style .npz file, or a directory with the four idx(.gz) files.
    /// Without it, mnist.npz is downloaded (and cached) like Keras's get_file does.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Download mnist.npz from this URL instead of the default origin and mirror
    /// [default: $MNIST_DATA_URL when set].
    #[arg(long, value_name = "URL")]
    pub data_url: Option<String>,
    /// Expected SHA-256 (hex) of the downloaded file (with --data-url).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Where downloads are cached [default: $MNIST_CACHE_DIR, else the platform cache dir].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use only the first N training and N/6 test samples (quick runs and tests).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Passes over the training set.
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    /// Samples per training step; the last, partial batch is trained too.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Seed for initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Adadelta's learning rate (Keras 2's default).
    #[arg(long, default_value_t = 1.0)]
    pub learning_rate: f32,
    /// Adadelta's epsilon: 1e-7 is Keras 2's, 1e-8 what keras-mxnet used.
    #[arg(long, default_value_t = 1e-7)]
    pub epsilon: f32,
    /// Where training runs.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// The GEMMs' input format on the GPU; sums, weights and the optimizer stay f32.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::F32)]
    pub precision: PrecisionChoice,
    /// CPU threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub data: DataArgs,
    /// Directory for the model and the training history (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// File name prefix of the exported MXNet model (PREFIX-symbol.json, PREFIX-0000.params).
    #[arg(long, value_name = "PREFIX", default_value = "mnist_cnn")]
    pub model_prefix: String,
    /// Precision of the exported parameters.
    #[arg(long, value_enum, default_value_t = ExportDtype::F32)]
    pub dtype: ExportDtype,
    /// Which model files to write: MXNet (PREFIX-symbol.json, PREFIX-0000.params), ONNX
    /// (PREFIX.onnx) or both.
    #[arg(long, value_enum, default_value_t = ModelFormat::Mxnet)]
    pub format: ModelFormat,
    /// Save the whole training state here after every epoch and every --checkpoint-interval,
    /// and resume from the newest valid checkpoint found here on start.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Seconds between checkpoints within an epoch (with --checkpoint-dir).
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub checkpoint_interval: f64,
    /// Log format on stdout.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Seconds between progress heartbeats when stdout is not a terminal, at most three per
    /// epoch (0: none).
    #[arg(long, default_value_t = 30)]
    pub heartbeat_secs: u64,
    /// More detail on stderr: data load time and each epoch's samples/s.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only the final results and errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Timed training steps (after warm-up).
    #[arg(long, default_value_t = 60)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// What to time: the CPU (the default: the anchors are CPU frameworks), the GPU, or the
    /// GPU when a usable one exists.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// The GPU's GEMM inputs, as for `mnist train`.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::F32)]
    pub precision: PrecisionChoice,
    /// CPU threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Real MNIST to train on (synthetic images otherwise; the speed is the same).
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// How the convolutions run on the CPU.
    #[arg(long, value_enum, default_value_t = ConvAlgorithm::Fast)]
    pub conv: ConvAlgorithm,
    /// Time inference instead of training: one image at a time (latency), then the whole
    /// test set (10,000 images; synthetic ones without --data) in batches of --batch-size.
    #[arg(long)]
    pub inference: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConvAlgorithm {
    /// Winograd F(4x4, 3x3) for conv2, direct for conv1 (what training uses).
    Fast,
    /// im2col + sgemm for both (the reference path).
    Im2col,
}

pub const PREDICT_HELP: &str = "\
Examples:
  mnist predict --model out/mnist_cnn 7.png 9.jpg
  mnist predict --model out/mnist_cnn --mnist-style --top 3 photo-of-a-digit.jpg
  mnist predict --model out/mnist_cnn --npz mnist.npz
  mnist predict --model mnist_cnn.onnx 7.png

Images are turned into greyscale (BT.601 luma), resized to the model's input (28x28) with a
triangle (bilinear, area-averaging when shrinking) filter and scaled to [0, 1], like the
sample's model server. Transparent images are composited onto a background that contrasts
with their ink. The model expects white digits on black: use --mnist-style for anything else.

Exit codes:
  0    success
  2    a bad model, image or npz file, or bad arguments
  70   internal error (a bug: please report it)";

pub const EXPORT_HELP: &str = "\
Examples:
  mnist export --model out/mnist_cnn --to mnist_cnn.onnx
  mnist export --model out/mnist_cnn --to mnist_cnn_nchw.onnx --dtype f16 --input-layout nchw

The file holds the standard graph (Conv, Relu, MaxPool, Flatten, Gemm, Softmax; opset 17) with
a dynamic batch: input /conv2d_1_input1, float32 images in [0, 1]; output softmax1_output, the
10 class probabilities.

Exit codes:
  0    success
  2    a bad or missing model, or bad arguments
  70   internal error (a bug: please report it)";

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// The model to convert: an MXNet checkpoint's prefix or an .onnx file.
    #[arg(long, value_name = "PREFIX|FILE.onnx")]
    pub model: String,
    /// Which PREFIX-NNNN.params to read.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub epoch: u32,
    /// The ONNX file to write (its name ends in .onnx); replaced atomically.
    #[arg(long, value_name = "FILE.onnx")]
    pub to: PathBuf,
    /// Precision of the stored weights.
    #[arg(long, value_enum, default_value_t = ExportDtype::F32)]
    pub dtype: ExportDtype,
    /// The order of the input's axes.
    #[arg(long, value_enum, default_value_t = InputLayoutChoice::Nhwc)]
    pub input_layout: InputLayoutChoice,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum NpzSplit {
    /// x_test and y_test.
    Test,
    /// x_train and y_train.
    Train,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PredictArgs {
    /// The model: an MXNet checkpoint's prefix (PREFIX-symbol.json and PREFIX-0000.params are
    /// read) or an ONNX file (a path ending in .onnx).
    #[arg(long, value_name = "PREFIX|FILE.onnx")]
    pub model: String,
    /// Which PREFIX-NNNN.params to read.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub epoch: u32,
    /// PNG, JPEG or PNM (PGM, PPM, PBM) images of any size, grey or colour, with or without alpha.
    #[arg(value_name = "FILE", required_unless_present = "npz", conflicts_with = "npz")]
    pub files: Vec<PathBuf>,
    /// Prepare images as MNIST's digits were: white ink on black (inverting dark-on-light
    /// images), cropped to the ink, fitted into 20x20 keeping the aspect ratio and centred by
    /// centre of mass in 28x28.
    #[arg(long, conflicts_with = "npz")]
    pub mnist_style: bool,
    /// Also list the next most likely classes, up to K in all.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub top: usize,
    /// One JSON object per line: file, class, probability, probabilities (every class), top.
    #[arg(long)]
    pub json: bool,
    /// Predict the images of a Keras-style .npz instead, reporting accuracy and loss when it
    /// holds labels (one line per image when it does not).
    #[arg(long, value_name = "FILE")]
    pub npz: Option<PathBuf>,
    /// Which split of --npz to use [default: test].
    #[arg(long, value_enum)]
    pub split: Option<NpzSplit>,
    /// CPU threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TuiArgs {
    /// Passes over the training set (editable in the app).
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    /// Samples per training step (editable in the app).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Seed for initialisation, shuffling and dropout (editable in the app).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where training runs (editable in the app).
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// The GPU's GEMM inputs, as for `mnist train` (editable in the app).
    #[arg(long, value_enum, default_value_t = PrecisionChoice::F32)]
    pub precision: PrecisionChoice,
    /// CPU threads for training (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub data: DataArgs,
    /// Start with this MXNet checkpoint (PREFIX-symbol.json, PREFIX-0000.params) or ONNX file
    /// (FILE.onnx) instead of the model shipped inside the binary.
    #[arg(long, value_name = "PREFIX|FILE.onnx")]
    pub model: Option<String>,
    /// The folder the save prompt suggests for models.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
}

pub const SERVE_HELP: &str = "\
Examples:
  mnist serve                                   # the shipped model, as \"mnist\"
  mnist serve --model out/mnist_cnn --backend cuda
  curl -X POST http://127.0.0.1:8080/predictions/mnist -T 7.jpg
  curl http://127.0.0.1:8082/metrics

Images are prepared exactly as the sample's MMS handler does (OpenCV greyscale decode,
bilinear resize to 28x28, / 255), so the answers match MMS's.

Exit codes:
  0    stopped by SIGTERM or SIGINT after finishing the requests in flight
  2    a bad model, bad arguments, or a port that cannot be opened
  70   internal error (a bug: please report it)";

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The checkpoint to serve (PREFIX-symbol.json and PREFIX-0000.params) [default: the model
    /// shipped inside the binary].
    #[arg(long, value_name = "PREFIX")]
    pub model: Option<String>,
    /// Which PREFIX-NNNN.params to read.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub epoch: u32,
    /// The name the model is served under: /predictions/NAME, /v2/models/NAME.
    #[arg(long, value_name = "NAME", default_value = "mnist")]
    pub model_name: String,
    /// Address of the inference and metrics ports.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub host: std::net::IpAddr,
    /// Inference port: /predictions, /ping, /classify and KServe's /v2 (0 for each port: the
    /// system chooses; the log's first lines say which).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address of the management port (MMS binds it to localhost too: it loads files).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub management_host: std::net::IpAddr,
    /// Management port: GET/POST /models, GET/DELETE /models/NAME.
    #[arg(long, default_value_t = 8081)]
    pub management_port: u16,
    /// Prometheus metrics port (GET /metrics).
    #[arg(long, default_value_t = 8082)]
    pub metrics_port: u16,
    /// Where the forward passes run.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// CPU worker threads, each with its own copy of the model (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Most images in one forward pass (MMS's batch_size).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Milliseconds a worker waits for a batch to fill (MMS's max_batch_delay); 0 takes what is
    /// waiting at once, which adds no latency when the server is idle. At most 10000, as for
    /// `POST /models`.
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub max_batch_delay: u64,
    /// Most requests in progress at once; more get 503 with Retry-After (MMS's job_queue_size).
    #[arg(long, default_value_t = 100)]
    pub queue_size: usize,
    /// Largest request body in bytes; larger ones get 413 (MMS's max_request_size).
    #[arg(long, value_name = "BYTES", default_value_t = 6_553_500)]
    pub max_body_bytes: usize,
    /// Images whose header claims more pixels are refused (400) before decoding.
    #[arg(long, value_name = "N", default_value_t = crate::preprocess::DEFAULT_MAX_PIXELS)]
    pub max_image_pixels: u64,
    /// Most images in one KServe v2 request.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_tensor_images: usize,
    /// Seconds allowed for a request's headers, its body and its answer.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Seconds SIGTERM waits for the requests in flight before closing what is left.
    #[arg(long, value_name = "SECS", default_value_t = 25.0)]
    pub drain_timeout: f64,
    /// Seconds after SIGTERM during which new requests are still served while readiness is
    /// already false, so load balancers stop sending first.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub shutdown_delay: f64,
    /// Most open connections; more wait to be accepted.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Threads for network I/O (the forward passes run on the workers).
    #[arg(long, default_value_t = 1)]
    pub io_threads: usize,
    /// Request log lines on stdout: text or JSON.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// No request log lines (start-up, drain and errors still go to stderr).
    #[arg(short, long)]
    pub quiet: bool,
}
