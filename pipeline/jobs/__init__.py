"""The batch jobs: analyse new calls, gate them, build the marts, apply retention. A job never imports another job."""
