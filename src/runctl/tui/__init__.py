"""Terminal dashboards (textual). Imported only by the commands that open one."""
