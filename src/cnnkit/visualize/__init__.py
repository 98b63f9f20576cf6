"""Pictures.  Every ``plot_*`` returns a matplotlib Figure (Agg, no window); callers save it."""
