/* A C program that ulma's runtime is not linked into: `ulma run` says it recorded nothing. */
#include <stdio.h>
int main(void) {
    puts("plain");
    return 0;
}
