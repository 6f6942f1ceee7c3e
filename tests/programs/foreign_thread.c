/* A thread Python did not make, calling back into Python again and again
 * (tests/programs/asyncio_foreign_thread.py).  Each call through a ctypes
 * callback takes a new thread state (PyGILState_Ensure) and frees it after
 * (PyGILState_Release).  Between calls the thread fills the heap's freed
 * small blocks with junk, so a thread state freed by the last call is
 * overwritten, not handed to the next one: anything that kept a pointer to
 * it reads junk. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef void (*callback)(int);

struct job {
    callback cb;
    int calls;
};

static void *run(void *arg)
{
    struct job *job = arg;
    void *junk[1024];
    int n = 0;
    for (int i = 0; i < job->calls; i++) {
        job->cb(i);
        for (size_t size = 16; size <= 16384 && n < 1024; size += 32) {
            junk[n] = malloc(size);
            if (junk[n])
                memset(junk[n++], 0xA5, size);
        }
    }
    while (n > 0)
        free(junk[--n]);
    return NULL;
}

int call_from_foreign_thread(callback cb, int calls)
{
    struct job job = {cb, calls};
    pthread_t t;
    if (pthread_create(&t, NULL, run, &job) != 0)
        return -1;
    return pthread_join(t, NULL);
}
