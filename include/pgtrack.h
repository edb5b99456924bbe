/* SPDX-License-Identifier: MIT */
/* Umbrella header: everything public in pgtrack. */
#ifndef PGTRACK_H
#define PGTRACK_H

#include <pgtrack/pgtrack.h>
#include <pgtrack/numa.h>
#include <pgtrack/probe.h>
#include <pgtrack/release.h>
#include <pgtrack/target.h>
#include <pgtrack/account.h>
#include <pgtrack/stats.h>
#include <pgtrack/offload.h>

#endif
