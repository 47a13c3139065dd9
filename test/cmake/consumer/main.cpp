#include <fibers/fibers.hpp>

#include <any>
#include <cstdio>

int main() {
    fibers::fiber f([] { return 42; });
    int result = std::any_cast<int>(f.switch_to());
    std::printf("%d\n", result);
    return result == 42 ? 0 : 1;
}
