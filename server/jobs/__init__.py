"""Upload jobs: a video file processed frame by frame (never dropping) with results kept on disk."""
