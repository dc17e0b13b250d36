/* See self-libs.h. */
#include "common/self-libs.h"

#include <errno.h>
#include <link.h>
#include <string.h>

#include "common/macro.h"
#include "common/banned.h"

struct loaded_objects {
    FILE *f;
    size_t index;
    const char *interp; /* the main program's PT_INTERP */
};

static int collect_object(struct dl_phdr_info *info, size_t size, void *userdata)
{
    struct loaded_objects *objs = userdata;
    if (objs->index++ == 0) {
        /* The main program comes first; the loader it names is printed first. */
        for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++)
            if (info->dlpi_phdr[i].p_type == PT_INTERP)
                objs->interp = (const char *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
        if (objs->interp)
            fprintf(objs->f, "%s\n", objs->interp);
        return 0;
    }
    /* The vDSO's name (linux-vdso.so.1) is no path: the kernel maps it into every process. */
    if (info->dlpi_name[0] != '/')
        return 0;
    /* The loader's own link map carries the PT_INTERP name, printed already. */
    if (objs->interp && streq(info->dlpi_name, objs->interp))
        return 0;
    fprintf(objs->f, "%s\n", info->dlpi_name);
    return 0;
}

int self_libs_print(FILE *f)
{
    struct loaded_objects objs = { .f = f };
    dl_iterate_phdr(collect_object, &objs);
    return objs.interp ? 0 : -ENOEXEC;
}
