//! A small fixed pool of threads that issue `fdatasync`s in parallel. When one group commit
//! touches many files (many streams), their syncs overlap instead of queueing one behind the
//! other; the filesystem journal can then commit them together.

use crate::fs::{FileHandle, FileSystem};
use parking_lot::Mutex;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Something to make durable.
#[derive(Debug, Clone)]
pub(crate) enum SyncJob {
    /// `fdatasync` a file.
    File(Arc<dyn FileHandle>),
    /// fsync a directory.
    Dir(PathBuf),
}

type Job = (SyncJob, usize, mpsc::Sender<(usize, io::Result<()>)>);

#[derive(Debug)]
pub(crate) struct SyncPool {
    fs: Arc<dyn FileSystem>,
    tx: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl SyncPool {
    pub fn new(fs: Arc<dyn FileSystem>, threads: usize) -> io::Result<SyncPool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..threads.saturating_sub(1) {
            let rx = Arc::clone(&rx);
            let fs = Arc::clone(&fs);
            let handle = std::thread::Builder::new()
                .name(format!("spool-sync-{i}"))
                .stack_size(128 * 1024) // they only call fdatasync
                .spawn(move || {
                    loop {
                        let job = rx.lock().recv();
                        let Ok((job, index, reply)) = job else { break };
                        let _ = reply.send((index, run(fs.as_ref(), &job)));
                    }
                })?;
            handles.push(handle);
        }
        Ok(SyncPool {
            fs,
            tx: Some(tx),
            threads: handles,
        })
    }

    /// Runs every job, in parallel when there are several; results in job order.
    pub fn run_all(&self, jobs: &[SyncJob]) -> Vec<io::Result<()>> {
        if jobs.len() <= 1 || self.threads.is_empty() {
            return jobs.iter().map(|j| run(self.fs.as_ref(), j)).collect();
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        let tx = self.tx.as_ref().expect("pool open");
        let mut results: Vec<Option<io::Result<()>>> = jobs.iter().map(|_| None).collect();
        // The calling thread works too: it takes the first job itself.
        for (i, job) in jobs.iter().enumerate().skip(1) {
            if tx.send((job.clone(), i, reply_tx.clone())).is_err() {
                results[i] = Some(run(self.fs.as_ref(), job));
            }
        }
        drop(reply_tx);
        results[0] = Some(run(self.fs.as_ref(), &jobs[0]));
        while let Ok((i, r)) = reply_rx.recv() {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("sync worker vanished"))))
            .collect()
    }
}

fn run(fs: &dyn FileSystem, job: &SyncJob) -> io::Result<()> {
    match job {
        SyncJob::File(f) => f.sync_data(),
        SyncJob::Dir(d) => fs.sync_dir(d),
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
        let pool = SyncPool::new(Arc::new(fs.clone()), 4).unwrap();
        let results = pool.run_all(&files);
        assert_eq!(results.len(), 11);
        assert!(results[..10].iter().all(|r| r.is_ok()));
        assert!(
            results[10].is_err(),
            "the failing directory sync is reported at its index"
        );
        assert_eq!(fs.ops() - before, 11);
    }
}
