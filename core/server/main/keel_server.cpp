// core/server/main/keel_server.cpp: placeholder of the server skeleton, replaced by its implementation.
#include <cstdio>
int main() {
    std::fputs("keel-server: not built yet\n", stderr);
    return 1;
}
