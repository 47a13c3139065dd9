// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_TEST_PERF_INTERLEAVED_HPP
#define FIBERS_TEST_PERF_INTERLEAVED_HPP

// What perf_hub and perf_sync share: rows of "ours beside an anchor", run
// interleaved so that a burst of load from elsewhere spoils one repetition
// of one variant rather than the comparison, each keeping its best, and
// printed as a table of ns per operation and ratios, then as RESULT lines
// for test/perf/collect.py.

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

namespace fibers_perf {

using clock_type = std::chrono::steady_clock;

inline double nanoseconds_per(clock_type::time_point start, long count) {
    std::chrono::duration<double, std::nano> elapsed = clock_type::now() - start;
    return elapsed.count() / static_cast<double>(count);
}

struct row {
    char const* name;
    double (*ours)(long count);   // ns per operation over `count` operations
    double (*anchor)(long count);
    char const* anchor_name;
    double goal; // the greatest ratio wanted; 0: none yet
    long count;
    double best_ours = std::numeric_limits<double>::max();
    double best_anchor = std::numeric_limits<double>::max();
};

// The command line of perf_hub, perf_sync, perf_scope and perf_switch:
// `[COUNT_OR_SCALE [REPETITIONS]]`, positive integers; anything else is
// refused with the usage and exit status 2.
struct size_arguments {
    long size;
    int repetitions;
};

inline long positive_argument(char const* text) {
    char* end = nullptr;
    long const v = std::strtol(text, &end, 10);
    return end != text && *end == '\0' && v > 0 ? v : 0;
}

inline size_arguments parse_size_arguments(int argc, char** argv, long default_size, int default_repetitions,
                                           char const* size_name) {
    size_arguments a{default_size, default_repetitions};
    if (argc > 1)
        a.size = positive_argument(argv[1]);
    if (argc > 2)
        a.repetitions = static_cast<int>(std::min<long>(positive_argument(argv[2]), 1000));
    if (argc > 3 || a.size == 0 || a.repetitions == 0) {
        std::fprintf(stderr, "usage: %s [%s [REPETITIONS]] (positive integers; defaults %ld and %d)\n", argv[0],
                     size_name, default_size, default_repetitions);
        std::exit(2);
    }
    return a;
}

// `program.name` with every run of other characters than letters and
// digits made one '_': an id for collect.py.
inline std::string result_id(char const* program, char const* name) {
    std::string id = std::string(program) + ".";
    bool gap = false;
    for (char const* c = name; *c != '\0'; ++c) {
        if (std::isalnum(static_cast<unsigned char>(*c))) {
            if (gap && id.back() != '.')
                id += '_';
            id += *c;
            gap = false;
        } else {
            gap = true;
        }
    }
    return id;
}

// One line that test/perf/collect.py reads: key=value, values with spaces
// in double quotes (never a quote inside).
inline void print_result(std::string const& id, char const* figure, double ours, double anchor,
                         char const* anchor_name, char const* unit, double goal) {
    std::printf("RESULT id=%s figure=\"%s\" fibers=%.2f anchor=%.2f anchor_name=\"%s\" unit=%s goal=", id.c_str(),
                figure, ours, anchor, anchor_name, unit);
    if (goal > 0)
        std::printf("ratio<=%g\n", goal);
    else
        std::printf("-\n");
}

// Warms every variant up (a tenth of its count: stacks, caches, threads),
// then runs them all in turn `repetitions` times, and prints the table.
// `program` prefixes the ids of the RESULT lines.
template <std::size_t N>
void run_and_print(row (&rows)[N], int repetitions, char const* program) {
    for (auto& r : rows) {
        r.ours(r.count / 10);
        r.anchor(r.count / 10);
    }
    for (int rep = 0; rep < repetitions; ++rep)
        for (auto& r : rows) {
            r.best_ours = std::min(r.best_ours, r.ours(r.count));
            r.best_anchor = std::min(r.best_anchor, r.anchor(r.count));
        }
    std::printf("best of %d repetitions, ns per operation\n", repetitions);
    std::printf("%-20s %9s   %-28s %9s %8s %6s\n", "", "fibers", "anchor", "ns", "ratio", "goal");
    for (auto const& r : rows) {
        std::printf("%-20s %9.1f   %-28s %9.1f %8.2f ", r.name, r.best_ours, r.anchor_name, r.best_anchor,
                    r.best_ours / r.best_anchor);
        if (r.goal > 0)
            std::printf("%6.2f\n", r.goal);
        else
            std::printf("%6s\n", "-");
    }
    for (auto const& r : rows)
        print_result(result_id(program, r.name), r.name, r.best_ours, r.best_anchor, r.anchor_name, "ns", r.goal);
}

} // namespace fibers_perf

#endif // FIBERS_TEST_PERF_INTERLEAVED_HPP
