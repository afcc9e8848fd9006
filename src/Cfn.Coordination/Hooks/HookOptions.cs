using System.Collections;
using System.ComponentModel.DataAnnotations;

namespace Cfn.Coordination.Hooks;

/// <summary>
/// Settings of the lifecycle hooks (SPEC §2.15, §3.6). A hook is the script named after it (<see cref="HookNames"/>)
/// in <see cref="Directory"/>, run with <c>/bin/bash</c>; a missing file means the hook is not configured.
/// </summary>
public sealed class HookOptions
{
    /// <summary>Default of <see cref="Directory"/>.</summary>
    public const string DefaultDirectory = "/etc/cfn/hooks";

    /// <summary>Longest accepted hook timeout (<c>TIMEOUT_HOOK_TIMEOUT_MS</c>).</summary>
    public const long MaxTimeoutMs = 600_000;

    /// <summary>Hooks run at all (<c>ENABLE_TIMEOUT_HOOKS</c>, false). When false nothing is looked up or run.</summary>
    public bool Enabled { get; set; }

    /// <summary>Where the hook scripts are (<c>TIMEOUT_HOOKS_DIR</c>, <c>/etc/cfn/hooks</c>); an absolute path.</summary>
    public string Directory { get; set; } = DefaultDirectory;

    /// <summary>A hook still running after this is killed with its process tree and counted failed (<c>TIMEOUT_HOOK_TIMEOUT_MS</c>, 5000).</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromMilliseconds(5000);

    /// <summary>Hooks running at once per <see cref="LifecycleHooks"/> (4); a hook due while all slots are busy is skipped and counted.</summary>
    [Range(1, 64, ErrorMessage = "MaxConcurrentHooks must be between {1} and {2}")]
    public int MaxConcurrentHooks { get; set; } = 4;

    /// <summary>Throws <see cref="ValidationException"/> naming the first bad setting.</summary>
    public void Validate()
    {
        OptionsValidation.Annotations(this);

        if (string.IsNullOrWhiteSpace(Directory) || Directory.Contains('\0', StringComparison.Ordinal) || !Path.IsPathFullyQualified(Directory))
        {
            throw new ValidationException($"TIMEOUT_HOOKS_DIR must be an absolute path (got \"{Directory}\")");
        }

        if (Timeout <= TimeSpan.Zero || Timeout > TimeSpan.FromMilliseconds(MaxTimeoutMs))
        {
            throw new ValidationException($"TIMEOUT_HOOK_TIMEOUT_MS must be between 1 and {MaxTimeoutMs} (got {(long)Timeout.TotalMilliseconds})");
        }
    }

    /// <summary>Reads <c>ENABLE_TIMEOUT_HOOKS</c>, <c>TIMEOUT_HOOKS_DIR</c> and <c>TIMEOUT_HOOK_TIMEOUT_MS</c> (process environment when null), then validates.</summary>
    /// <exception cref="ValidationException">A value is bad; the message names the variable.</exception>
    public static HookOptions FromEnvironment(IDictionary? environment = null)
    {
        var env = new EnvironmentSettings(environment);
        var o = new HookOptions();
        o.Enabled = env.Flag("ENABLE_TIMEOUT_HOOKS") ?? o.Enabled;
        o.Directory = env.Text("TIMEOUT_HOOKS_DIR") ?? o.Directory;
        if (env.Positive("TIMEOUT_HOOK_TIMEOUT_MS") is { } ms)
        {
            if (ms > MaxTimeoutMs)
            {
                throw new ValidationException($"TIMEOUT_HOOK_TIMEOUT_MS must be between 1 and {MaxTimeoutMs} (got {ms})");
            }

            o.Timeout = TimeSpan.FromMilliseconds(ms);
        }

        o.Validate();
        return o;
    }
}
