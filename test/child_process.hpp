// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_TEST_CHILD_PROCESS_HPP
#define FIBERS_TEST_CHILD_PROCESS_HPP

// Runs a function in a forked child and reports how the child ended and
// what it wrote to stderr: for behaviour that ends a process (a stack
// overflow, a fatal misuse).
//
// Boost.Test catches SIGSEGV around each test case, which would hide the
// library's own handler in the child; a test module with death tests
// defines FIBERS_TEST_DEATH_MAIN before including this header (and
// BOOST_TEST_NO_MAIN before Boost.Test) to get a main() that turns that off.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace fibers_test {

struct child_result {
    bool exited = false;
    int exit_code = 0;
    bool signaled = false;
    int signal = 0;
    std::string stderr_text;

    bool died_abnormally() const { return signaled || (exited && exit_code != 0); }
};

template <class Fn>
child_result run_in_child(Fn&& fn) {
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0)
        std::abort();
    pid_t pid = ::fork();
    if (pid < 0)
        std::abort();
    if (pid == 0) {
        ::dup2(pipe_fds[1], 2);
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        fn();
        ::_exit(0);
    }
    ::close(pipe_fds[1]);
    child_result result;
    char buffer[4096];
    for (;;) {
        ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
        if (n <= 0)
            break;
        result.stderr_text.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.exited = WIFEXITED(status);
    result.exit_code = result.exited ? WEXITSTATUS(status) : 0;
    result.signaled = WIFSIGNALED(status);
    result.signal = result.signaled ? WTERMSIG(status) : 0;
    return result;
}

} // namespace fibers_test

#ifdef FIBERS_TEST_DEATH_MAIN
int main(int argc, char* argv[]) {
    ::setenv("BOOST_TEST_CATCH_SYSTEM_ERRORS", "no", 0);
    return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
#endif

#endif // FIBERS_TEST_CHILD_PROCESS_HPP
