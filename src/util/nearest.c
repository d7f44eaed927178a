/* Nearest-name hints (nearest.h): optimal string alignment distance. */
#include <string.h>

#include "util/nearest.h"

#define MZ_NEAREST_MAX 64

size_t mz__edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t d[MZ_NEAREST_MAX + 1][MZ_NEAREST_MAX + 1];

    if (la > MZ_NEAREST_MAX || lb > MZ_NEAREST_MAX)
        return (size_t)-1;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *mz__nearest_name(const char *word, const char *const *names, size_t n)
{
    size_t best = (size_t)-1, limit = strlen(word) / 3;
    const char *found = NULL;

    if (limit < 2)
        limit = 2;
    for (size_t i = 0; i < n; i++) {
        size_t dist = mz__edit_distance(word, names[i]);
        if (dist < best) {
            best = dist;
            found = names[i];
        }
    }
    return best <= limit ? found : NULL;
}
