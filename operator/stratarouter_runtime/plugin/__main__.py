from stratarouter_runtime.plugin.main import entry

entry()
