//! The tracker's catalog as the application uses it: publish a metainfo (and keep trying in the background
//! while the tracker cannot take it), list the files, fetch a metainfo by file name.

use super::{AppError, PeerApp};
use crate::storage::Blocking;
use crate::tracker_client::{self, TrackerClientError};
use crate::transport::Transport;
use enjambre_core::metainfo::Metainfo;
use enjambre_core::tracker::registry::FileSummary;
use std::time::Duration;

/// First wait before publishing again after the tracker refused or could not be reached.
const PUBLISH_RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two tries of a publication.
const PUBLISH_RETRY_MAX: Duration = Duration::from_secs(30);

impl<T: Transport, B: Blocking> PeerApp<T, B> {
    /// Publish a metainfo to the tracker catalog. Publishing the same torrent again is fine.
    pub async fn publish(&self, meta: &Metainfo) -> Result<FileSummary, AppError> {
        let tracker = self.tracker_for("publish files")?;
        tracker_client::publish(&self.env.transport, &tracker.base, &meta.to_bytes())
            .await
            .map_err(|e| tracker_error(&tracker.base, e))
    }

    /// Publish `meta` in a background task that tries again, waiting longer each time (up to
    /// [`PUBLISH_RETRY_MAX`]), until the tracker takes it or the app stops. For a tracker that is down or
    /// unreachable when the folder is served.
    pub(super) fn publish_in_background(&self, meta: &Metainfo) {
        let Some(tracker) = &self.tracker else { return };
        let (transport, clock) = (self.env.transport.clone(), self.env.clock);
        let (base, bytes, name) = (
            tracker.base.clone(),
            meta.to_bytes(),
            meta.info.name.clone(),
        );
        let task = tokio::spawn(async move {
            let mut wait = PUBLISH_RETRY_FIRST;
            loop {
                clock.sleep_until(clock.now() + wait).await;
                match tracker_client::publish(&transport, &base, &bytes).await {
                    Ok(_) => {
                        tracing::info!("{name} published to the catalog");
                        return;
                    }
                    Err(e) => tracing::debug!("{name} still not published: {e}"),
                }
                wait = (wait * 2).min(PUBLISH_RETRY_MAX);
            }
        });
        if let Ok(mut tasks) = self.background.lock() {
            tasks.push(task);
        }
    }

    /// The files published in the tracker catalog.
    pub async fn list_catalog(&self) -> Result<Vec<FileSummary>, AppError> {
        let tracker = self.tracker_for("list the catalog")?;
        tracker_client::list_files(&self.env.transport, &tracker.base)
            .await
            .map_err(|e| tracker_error(&tracker.base, e))
    }

    /// The metainfo published under `name` in the tracker catalog.
    pub async fn fetch_by_name(&self, name: &str) -> Result<Metainfo, AppError> {
        let tracker = self.tracker_for("get files by name")?;
        let bytes = tracker_client::fetch_metainfo(&self.env.transport, &tracker.base, name)
            .await
            .map_err(|e| match e {
                TrackerClientError::Status { status: 404, .. } => {
                    AppError::UnknownName(name.to_string())
                }
                e => tracker_error(&tracker.base, e),
            })?;
        Metainfo::from_bytes(&bytes).map_err(|source| AppError::BadCatalogMetainfo {
            name: name.to_string(),
            source,
        })
    }
}

/// A tracker client error as the application's: unreachable (connection refused, timeout) or another.
fn tracker_error(base: &str, e: TrackerClientError) -> AppError {
    match e {
        e @ (TrackerClientError::Connect(_) | TrackerClientError::Timeout) => {
            AppError::TrackerUnreachable {
                url: base.to_string(),
                source: e,
            }
        }
        e => AppError::Tracker {
            url: base.to_string(),
            source: e,
        },
    }
}
