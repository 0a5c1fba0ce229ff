"""The timeline's source plug-ins: each module here declares `PLUGIN = SourcePlugin(...)` for one
source of events, and the core (`projection.registry`) finds them all; a new source is one new
module."""
