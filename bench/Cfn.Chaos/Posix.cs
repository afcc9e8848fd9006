using System.Runtime.InteropServices;

namespace Cfn.Chaos;

/// <summary>Signals sent straight with kill(2): no fork per fault, so a SIGKILL lands within microseconds of the decision.</summary>
internal static class Posix
{
    public const int SigKill = 9;
    public const int SigTerm = 15;
    public const int SigCont = 18;
    public const int SigStop = 19;

    [DllImport("libc", SetLastError = true, EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);

    /// <summary>Sends <paramref name="signal"/>; false when the process is gone.</summary>
    public static bool Send(int pid, int signal) => Kill(pid, signal) == 0;

    public static string Name(int signal) => signal switch
    {
        SigKill => "SIGKILL",
        SigTerm => "SIGTERM",
        SigCont => "SIGCONT",
        SigStop => "SIGSTOP",
        _ => $"signal {signal}",
    };
}
