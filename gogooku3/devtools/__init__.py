"""Development and test tools (local stand-ins for production services). Not used by the pipeline."""
