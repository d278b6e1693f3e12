"""The Linux backend: /proc, /sys, dpkg/rpm, X11, utmp, CUPS, browser profiles."""
