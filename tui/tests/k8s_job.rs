//! The Kubernetes manifests run for real against the locally built binary: the training
//! container of k8s/job.yaml and k8s/pod.yaml (args and env under the image's ENTRYPOINT) and
//! every index of k8s/sweep.yaml (its shell wrapper). Leaves out the cluster: scheduling, GPUs,
//! storage.
//!
//! What differs from a pod, and why: paths under a volumeMount go to a temp folder; the
//! download comes from a loopback server serving a small synthetic MNIST (through
//! $MNIST_DATA_URL, the binary's mirror setting) with `--sha256` for its digest, since the real
//! 11 MB file cannot be fetched here; `--epochs 1` keeps it short. These are appended: clap
//! refuses a repeated flag, so the test first checks that the manifest does not set them.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{serve, synthetic_npz, temp_dir};
use sha2::Digest;
use yaml_rust2::{Yaml, YamlLoader};

const K8S: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s");

/// The training container of a manifest's Job, as the kubelet would start it.
struct Container {
    command: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mount_paths: Vec<String>,
}

fn strings(list: &Yaml) -> Vec<String> {
    match list {
        Yaml::BadValue => Vec::new(),
        _ => list.as_vec().expect("a list").iter().map(|s| s.as_str().expect("a string").to_string()).collect(),
    }
}

/// The Job or Pod in `file` and its container named "mnist".
fn load(file: &str) -> (Yaml, Container) {
    let text = std::fs::read_to_string(Path::new(K8S).join(file)).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let workload = docs
        .into_iter()
        .find(|d| matches!(d["kind"].as_str(), Some("Job" | "Pod")))
        .unwrap_or_else(|| panic!("no Job or Pod in {file}"));
    let pod_spec = match workload["kind"].as_str() {
        Some("Job") => &workload["spec"]["template"]["spec"],
        _ => &workload["spec"],
    };
    let containers = pod_spec["containers"].as_vec().expect("containers");
    let c = containers.iter().find(|c| c["name"].as_str() == Some("mnist")).expect("a container named mnist");
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c["env"].as_vec().map_or(&[][..], |v| &v[..]) {
        let name = e["name"].as_str().unwrap().to_string();
        let value =
            e["value"].as_str().unwrap_or_else(|| panic!("{file}: env {name} has no plain value; extend this test"));
        // A value may refer to the variables defined before it.
        let value = expand(value, &env);
        env.push((name, value));
    }
    let mount_paths = c["volumeMounts"]
        .as_vec()
        .map_or(Vec::new(), |m| m.iter().map(|m| m["mountPath"].as_str().unwrap().to_string()).collect());
    let container = Container { command: strings(&c["command"]), args: strings(&c["args"]), env, mount_paths };
    (workload, container)
}

/// Kubernetes' expansion of command and args: `$$` is a literal `$`; `$(NAME)` becomes NAME's
/// value where the container defines NAME and stays as written otherwise (so a shell's
/// `$((...))` passes through).
fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some((name, r)) = after.strip_prefix('(').and_then(|r| r.split_once(')')) {
            match env.iter().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = r;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out + rest
}

/// The folder that stands in for the volume mounted at `mount`.
fn volume_dir(root: &Path, mount: &str) -> PathBuf {
    root.join(mount.trim_start_matches('/'))
}

/// `value` with a volume's mount path replaced by its temp folder. Any other absolute path would
/// be on the container's read-only root filesystem, where the run could not write.
fn on_volumes(value: &str, mounts: &[String], root: &Path) -> String {
    if !value.starts_with('/') {
        return value.to_string();
    }
    for mount in mounts {
        if let Some(rest) = value.strip_prefix(mount.as_str()).filter(|r| r.is_empty() || r.starts_with('/')) {
            return format!("{}{rest}", volume_dir(root, mount).display());
        }
    }
    panic!("{value} is on no volume ({mounts:?}): the read-only root filesystem would refuse it");
}

/// The command line the image runs for an empty `command`: its ENTRYPOINT, which must be the
/// binary alone (checked in the Dockerfile, so the two cannot drift apart).
fn entrypoint_is_the_binary() {
    let dockerfile = std::fs::read_to_string(Path::new(K8S).join("Dockerfile")).unwrap();
    let entrypoints: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("ENTRYPOINT")).collect();
    assert!(!entrypoints.is_empty() && entrypoints.iter().all(|l| *l == r#"ENTRYPOINT ["mnist"]"#), "{entrypoints:?}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_unset(args: &[String], flags: &[&str], file: &str) {
    for flag in flags {
        assert!(
            !args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}="))),
            "{file} sets {flag}, which this test overrides"
        );
    }
}

/// Runs the training container of `file` (job.yaml or pod.yaml) and checks that it downloads
/// into its cache and writes the model, both on its volume.
fn run_training_container(file: &str) {
    entrypoint_is_the_binary();
    let (_, c) = load(file);
    assert!(c.command.is_empty(), "{file} should use the image's ENTRYPOINT, got {:?}", c.command);
    assert_unset(&c.args, &["--data", "--data-url", "--sha256", "--epochs"], file);
    assert!(c.env.iter().all(|(k, _)| k != "MNIST_DATA_URL"), "{file} sets MNIST_DATA_URL, which this test overrides");

    let dir = temp_dir(&format!("k8s-{file}"));
    let volumes = dir.join("volumes");
    let args: Vec<String> = c.args.iter().map(|a| on_volumes(&expand(a, &c.env), &c.mount_paths, &volumes)).collect();
    let env: Vec<(String, String)> =
        c.env.iter().map(|(k, v)| (k.clone(), on_volumes(v, &c.mount_paths, &volumes))).collect();
    let out_dir = args
        .iter()
        .position(|a| a == "--out-dir")
        .map(|i| PathBuf::from(&args[i + 1]))
        .unwrap_or_else(|| panic!("{file} must pass --out-dir (the working directory is read-only)"));
    let cache_dir = env
        .iter()
        .find(|(k, _)| k == "MNIST_CACHE_DIR")
        .map(|(_, v)| PathBuf::from(v))
        .unwrap_or_else(|| panic!("{file} must set MNIST_CACHE_DIR (the home directory is read-only)"));

    let body = synthetic_npz(384, 96);
    let sha = sha2::Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (url, hits) = serve(body, 200);
    let termination = dir.join("termination-log");
    std::fs::write(&termination, "").unwrap();
    // env_clear: a container sees only the image's and the manifest's variables (and no proxy).
    let output: Output = Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(&args)
        .args(["--sha256", &sha, "--epochs", "1"])
        .env_clear()
        .envs(env)
        .env("MNIST_DATA_URL", &url)
        .env("MNIST_TERMINATION_LOG", &termination)
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "args {args:?}\nstdout:\n{stdout}\nstderr:\n{}", text(&output.stderr));
    assert!(stdout.lines().any(|l| l.starts_with("Test accuracy: ")), "{stdout}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    for file in ["mnist_cnn-symbol.json", "mnist_cnn-0000.params", "history.csv"] {
        assert!(out_dir.join(file).is_file(), "{file} missing in {}", out_dir.display());
    }
    // Beside the file, the (empty) lock file through which pods sharing the cache take turns.
    let cached: Vec<PathBuf> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|e| e != "lock"))
        .collect();
    assert!(cached.len() == 1 && cached[0].extension().is_some_and(|e| e == "npz"), "{cached:?}");
    let summary = std::fs::read_to_string(&termination).unwrap();
    assert!(summary.starts_with("trained 1 epochs: test accuracy "), "{summary:?}");
}

#[test]
fn the_job_container_downloads_into_its_cache_and_writes_the_model_to_its_volume() {
    run_training_container("job.yaml");
}

#[test]
fn the_sample_pod_container_writes_the_model_to_its_volume() {
    run_training_container("pod.yaml");
}

#[test]
fn each_sweep_index_trains_its_own_grid_point_and_the_grid_has_completions_points() {
    let (job, c) = load("sweep.yaml");
    assert_eq!(job["spec"]["completionMode"].as_str(), Some("Indexed"));
    let completions = job["spec"]["completions"].as_i64().expect("completions");
    assert_eq!(c.command, ["/bin/sh", "-c"]);
    assert_eq!(c.args.len(), 1, "one script");

    let dir = temp_dir("k8s-sweep");
    let volumes = dir.join("volumes");
    // The Job controller adds JOB_COMPLETION_INDEX to the container's variables.
    let script = |index: i64| {
        let mut env = c.env.clone();
        env.push(("JOB_COMPLETION_INDEX".into(), index.to_string()));
        let mut script = expand(&c.args[0], &env);
        for mount in &c.mount_paths {
            script = script.replace(&format!("{mount}/"), &format!("{}/", volume_dir(&volumes, mount).display()));
        }
        script
    };
    assert_ne!(script(0), expand(&c.args[0], &c.env), "the script should write under a volume");
    let env: Vec<(String, String)> =
        c.env.iter().map(|(k, v)| (k.clone(), on_volumes(v, &c.mount_paths, &volumes))).collect();

    // `mnist` on PATH: the real binary, on a local synthetic MNIST for one epoch. It records
    // its arguments so the grid points can be compared.
    let npz = dir.join("small.npz");
    std::fs::write(&npz, synthetic_npz(256, 64)).unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = dir.join("calls.txt");
    let fake = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\" --data '{}' --epochs 1\n",
        record.display(),
        env!("CARGO_BIN_EXE_mnist"),
        npz.display()
    );
    std::fs::write(bin.join("mnist"), fake).unwrap();
    std::fs::set_permissions(bin.join("mnist"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |index: i64| {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(script(index))
            .env_clear()
            .envs(env.iter().cloned())
            .env("PATH", &bin)
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("MNIST_TERMINATION_LOG", dir.join("termination-log"))
            .output()
            .unwrap()
    };
    for index in 0..completions {
        let output = run(index);
        assert!(
            output.status.success(),
            "index {index}\nstdout:\n{}\nstderr:\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
    }
    let past = run(completions);
    assert_eq!(
        past.status.code(),
        Some(2),
        "completions ({completions}) must be the grid's size: index {completions} ran\n{}",
        text(&past.stderr)
    );
    assert!(text(&past.stderr).contains("past the grid"), "{}", text(&past.stderr));

    let calls = std::fs::read_to_string(&record).unwrap();
    let value = |call: &str, flag: &str| -> String {
        let words: Vec<&str> = call.split_whitespace().collect();
        words
            .iter()
            .position(|w| *w == flag)
            .map(|i| words[i + 1].to_string())
            .unwrap_or_else(|| panic!("{flag} missing in {call}"))
    };
    let points: BTreeSet<(String, String)> =
        calls.lines().map(|c| (value(c, "--batch-size"), value(c, "--seed"))).collect();
    let out_dirs: BTreeSet<String> = calls.lines().map(|c| value(c, "--out-dir")).collect();
    assert_eq!(calls.lines().count() as i64, completions, "{calls}");
    assert_eq!(points.len() as i64, completions, "every index its own point: {points:?}");
    assert_eq!(out_dirs.len() as i64, completions, "every point its own folder: {out_dirs:?}");
    for out_dir in &out_dirs {
        assert!(out_dir.starts_with(&volumes.display().to_string()), "{out_dir} is not on the volume");
        let history = std::fs::read_to_string(Path::new(out_dir).join("history.csv")).unwrap();
        assert_eq!(history.lines().count(), 2, "{out_dir}: {history}");
    }
}

#[test]
fn expansion_follows_kubernetes() {
    let env = [("A".to_string(), "x".to_string())];
    assert_eq!(expand("$(A)/$$(A)/$((1 + 1))/$(B)/$A/$(A/$", &env), "x/$(A)/$((1 + 1))/$(B)/$A/$(A/$");
}
