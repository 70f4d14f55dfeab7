"""What a user calls: the Job Manager, job sets and their jobs, results, reports, listing and management."""
