//! Shared helpers: a shared in-memory writer and one request of the seed's shape.

use std::io::Write;
use std::sync::{Arc, Mutex};

use omni_metrics::instrument::Request;

/// An in-memory writer whose clones share the bytes.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedBuf(pub(crate) Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One request of the seed's shape: three named stages in batches, two transfers.
pub(crate) fn seed_like_request(id: &str) {
    let request = Request::start(id);
    for (stage_id, name) in [(0, "thinker"), (1, "talker"), (2, "code2wav")] {
        let stage = request.stage(stage_id);
        stage
            .name(name)
            .batch(stage_id, 1)
            .tokens_in(100)
            .tokens_out(10);
        drop(stage.postprocess());
    }
    for (from, to) in [(0, 1), (1, 2)] {
        let transfer = request.transfer(from, to);
        transfer.size_bytes(4096);
        drop(transfer.tx());
        drop(transfer.rx_decode());
    }
    request.finish();
}
