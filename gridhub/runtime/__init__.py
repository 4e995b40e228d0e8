"""The embedded runtime: `gridhub up` starts, supervises and stops every service on one machine."""
