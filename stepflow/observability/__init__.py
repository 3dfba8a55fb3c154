"""Operating the engine as a service: Prometheus metrics (:mod:`.metrics`, served by :mod:`.prometheus`) and
OpenTelemetry traces (:mod:`.tracing`)."""
