//! A small fixed pool of threads that issue `fdatasync`s in parallel. When one group commit
//! touches many files (many streams), their syncs overlap instead of queueing one behind the
//! other; the filesystem journal can then commit them together.

use crate::fs::{FileHandle, FileSystem};
use crate::{SyncEvent, SyncKind, SyncObserver};
use parking_lot::Mutex;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Something to make durable.
#[derive(Debug, Clone)]
pub(crate) enum SyncJob {
    /// `fdatasync` a file.
    File(Arc<dyn FileHandle>),
    /// fsync a directory.
    Dir(PathBuf),
    /// `syncfs` the filesystem holding this path.
    Filesystem(PathBuf),
}

/// Called once with every job's result, in job order, by the thread that finished last.
pub(crate) type Done = Box<dyn FnOnce(Vec<io::Result<()>>) + Send>;

struct Pending {
    remaining: usize,
    results: Vec<Option<io::Result<()>>>,
    done: Option<Done>,
}

type Job = (SyncJob, usize, Arc<Mutex<Pending>>);

#[derive(Debug)]
pub(crate) struct SyncPool {
    fs: Arc<dyn FileSystem>,
    observer: Option<SyncObserver>,
    tx: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl SyncPool {
    pub fn new(
        fs: Arc<dyn FileSystem>,
        threads: usize,
        observer: Option<SyncObserver>,
    ) -> io::Result<SyncPool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let fs = Arc::clone(&fs);
            let observer = observer.clone();
            let handle = std::thread::Builder::new()
                .name(format!("spool-sync-{i}"))
                .stack_size(128 * 1024) // they only call fdatasync
                .spawn(move || {
                    loop {
                        let job = rx.lock().recv();
                        let Ok((job, index, pending)) = job else {
                            break;
                        };
                        complete(fs.as_ref(), observer.as_ref(), &job, index, &pending);
                    }
                })?;
            handles.push(handle);
        }
        Ok(SyncPool {
            fs,
            observer,
            tx: Some(tx),
            threads: handles,
        })
    }

    /// Starts every job (in parallel) and returns at once; `done` gets the results.
    pub fn submit(&self, jobs: Vec<SyncJob>, done: Done) {
        if jobs.is_empty() {
            done(Vec::new());
            return;
        }
        let pending = Arc::new(Mutex::new(Pending {
            remaining: jobs.len(),
            results: jobs.iter().map(|_| None).collect(),
            done: Some(done),
        }));
        let tx = self.tx.as_ref().expect("pool open");
        for (i, job) in jobs.into_iter().enumerate() {
            if let Err(mpsc::SendError((job, i, pending))) = tx.send((job, i, Arc::clone(&pending)))
            {
                complete(self.fs.as_ref(), self.observer.as_ref(), &job, i, &pending);
            }
        }
    }

    /// Runs every job, in parallel, and waits; results in job order.
    pub fn run_all(&self, jobs: Vec<SyncJob>) -> Vec<io::Result<()>> {
        let n = jobs.len();
        let (tx, rx) = mpsc::channel();
        self.submit(
            jobs,
            Box::new(move |results| {
                let _ = tx.send(results);
            }),
        );
        rx.recv().unwrap_or_else(|_| {
            (0..n)
                .map(|_| Err(io::Error::other("sync worker vanished")))
                .collect()
        })
    }
}

/// Runs one job on the calling thread, timing it for the observer.
pub(crate) fn run(
    fs: &dyn FileSystem,
    observer: Option<&SyncObserver>,
    job: &SyncJob,
) -> io::Result<()> {
    let start = Instant::now();
    let (kind, result) = match job {
        SyncJob::File(f) => (SyncKind::File, f.sync_data()),
        SyncJob::Dir(d) => (SyncKind::Directory, fs.sync_dir(d)),
        SyncJob::Filesystem(p) => (SyncKind::Filesystem, fs.sync_filesystem(p)),
    };
    if let Some(observer) = observer {
        observer.observe(&SyncEvent {
            kind,
            duration: start.elapsed(),
            ok: result.is_ok(),
        });
    }
    result
}

fn complete(
    fs: &dyn FileSystem,
    observer: Option<&SyncObserver>,
    job: &SyncJob,
    index: usize,
    pending: &Mutex<Pending>,
) {
    let result = run(fs, observer, job);
    let mut p = pending.lock();
    p.results[index] = Some(result);
    p.remaining -= 1;
    if p.remaining == 0 {
        let done = p.done.take().expect("done once");
        let results = p
            .results
            .drain(..)
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("sync job lost"))))
            .collect();
        drop(p);
        done(results);
    }
}

impl Drop for SyncPool {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::sim::{EIO, FailRule, Faults, Op, SimFs};
    use std::path::Path;

    #[test]
    fn every_job_runs_and_results_come_back_in_job_order() {
        let fs = SimFs::new();
        let files: Vec<SyncJob> = (0..10)
            .map(|i| SyncJob::File(fs.create_new(Path::new(&format!("/f{i}"))).unwrap()))
            .chain(std::iter::once(SyncJob::Dir("/".into())))
            .collect();
        let before = fs.ops();
        fs.set_faults(Faults {
            fail: vec![FailRule {
                op: Op::SyncDir,
                path_contains: None,
                errno: EIO,
                skip: 0,
                times: 1,
            }],
            ..Faults::default()
        });
        let pool = SyncPool::new(Arc::new(fs.clone()), 4, None).unwrap();
        let results = pool.run_all(files);
        assert_eq!(results.len(), 11);
        assert!(results[..10].iter().all(|r| r.is_ok()));
        assert!(
            results[10].is_err(),
            "the failing directory sync is reported at its index"
        );
        assert_eq!(fs.ops() - before, 11);
    }
}
