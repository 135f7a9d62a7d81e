// Metrics (being written): a prom-client registry the application can mount.

export {};
